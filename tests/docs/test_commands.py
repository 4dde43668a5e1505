"""The commands README.md and docs/*.md show run as written, against files the repository ships.

Every block fenced as `sh` is a script. A page's blocks run in order (a later block may use a
file an earlier one made), with `bash -euo pipefail` and a timeout, in a temporary copy of the
repository whose `.venv/` links to the real one: nothing is written into the checkout. A block
that cannot run in a test is marked by the comment `<!-- not run in tests: why -->` right
before its fence; every other one must exit 0. Output-only examples are fenced as `console` or
`text`. The pages run concurrently, a page's blocks in sequence.

A block marked `<!-- needs the stack: make run -->` runs against the embedded stack: once the
pages are done, one `pulse run` starts in a copy of its own, every such block of every page
runs there in document order (README first), the same way, and must exit 0; one that calls
`curl` must print a JSON document. Then the stack is stopped with SIGINT, as Ctrl-C stops
`make run`, and must have stopped every process it started.

The module also checks the markup the runner relies on (no shell block under another label, no
marker without a reason or a block), that repository paths named in backquotes exist, and that
the README's relative links resolve. The docs build itself (`mkdocs build --strict`) is run by
`make docs` and `make test`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_run_lifecycle import running, start_run, started_by

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

# Seconds one block may take. The slowest shipped block (the CDNOW fit and replay) takes ~10 s.
BLOCK_TIMEOUT = 120
# Block languages that are run, shown only, or refused (they would hide a command).
RUN = "sh"
SHOWN = frozenset({"console", "text", "json", "toml", "yaml", "promql", "markdown", "python"})

SKIP_MARK = re.compile(r"^\s*<!--\s*not run in tests\s*:\s*(?P<why>.*?)\s*-->\s*$")
STACK_MARK = re.compile(r"^\s*<!--\s*needs the stack\s*:\s*make run\s*-->\s*$")
ANY_MARK = re.compile(r"<!--\s*(?:not run in tests|needs the stack)", re.IGNORECASE)
# A fence opens a line (after indentation); its info string holds no backquote (CommonMark).
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
REPO_PATH = re.compile(
    r"^(?:(?:streams|services|tests|bench|deploy|docs|\.ci)/[\w./-]*"
    r"|Makefile|Dockerfile|docker-compose\.yml|pyproject\.toml|mkdocs\.yml|README\.md)$"
)
# Paths a documented command writes, named as what it writes: not in a fresh checkout.
GENERATED = frozenset({"bench/results/latest.json"})
MD_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
# Settings from the caller's shell must not change what a documented command does, and a
# `make` run by a block is not a sub-make of the `make test` that runs this test.
DROPPED_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, why it is not run, and whether
    it runs against the stack."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the marker's reason; None when there is no such marker
    stack: bool = False  # marked `<!-- needs the stack: make run -->`

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Marker:
    page: Path
    line: int
    text: str


def parse(page: Path) -> tuple[list[Block], list[Marker]]:
    """The page's fenced blocks and its markers that do not sit right before a block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    dangling: list[Marker] = []
    pending: Marker | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        opened = FENCE.match(line)
        if opened is None:
            if ANY_MARK.search(line):
                if pending is not None:
                    dangling.append(pending)
                pending = Marker(page, i + 1, line.strip())
            elif line.strip() and pending is not None:
                dangling.append(pending)
                pending = None
            i += 1
            continue
        fence, indent, start = opened["fence"], len(opened["indent"]), i + 1
        lang = opened["info"].split()[0] if opened["info"] else ""
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = FENCE.match(lines[i])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"]
            ):
                break
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i].lstrip())
            i += 1
        skip, stack = None, False
        if pending is not None:
            found = SKIP_MARK.match(pending.text)
            stack = STACK_MARK.match(pending.text) is not None
            skip = None if stack else (found["why"] if found else "")
            if lang != RUN or not (skip or stack):
                dangling.append(pending)
            pending = None
        blocks.append(Block(page, start, lang, "\n".join(body), skip, stack))
        i += 1
    if pending is not None:
        dangling.append(pending)
    return blocks, dangling


ALL = {page: parse(page) for page in PAGES}
BLOCKS = [b for blocks, _ in ALL.values() for b in blocks]
RUNNABLE = {
    page: [b for b in blocks if b.lang == RUN and b.skip is None and not b.stack]
    for page, (blocks, _) in ALL.items()
}
RUN_PAGES = [page for page, blocks in RUNNABLE.items() if blocks]
# In document order: the README first, then the docs pages by name.
STACK_BLOCKS = [b for b in BLOCKS if b.lang == RUN and b.stack]


def test_the_pages_show_commands_and_the_test_finds_them() -> None:
    assert (ROOT / "README.md") in RUN_PAGES
    assert sum(len(b) for b in RUNNABLE.values()) >= 5
    assert any(b.page == ROOT / "README.md" for b in STACK_BLOCKS)


def test_every_block_is_labelled_as_run_or_as_shown() -> None:
    wrong = [
        f"{b.where}: a block fenced as {b.lang or 'nothing'!r}: fence commands as `sh` (run by "
        "this test) and output as `console` or `text`"
        for b in BLOCKS
        if b.lang != RUN and b.lang not in SHOWN
    ]
    assert not wrong, "\n".join(wrong)


def test_every_marker_gives_a_reason_and_sits_before_a_sh_block() -> None:
    wrong = [
        f"{m.page.relative_to(ROOT)}:{m.line}: {m.text!r} must be "
        "`<!-- not run in tests: why -->` or `<!-- needs the stack: make run -->` on the line "
        "right before a ```sh fence"
        for _, markers in ALL.values()
        for m in markers
    ]
    assert not wrong, "\n".join(wrong)


def test_repository_paths_named_in_the_pages_exist() -> None:
    missing = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for span in CODE_SPAN.findall(line):
                path = span.strip().split(":")[0]
                if REPO_PATH.match(path) and path not in GENERATED and not (ROOT / path).exists():
                    missing.append(f"{page.relative_to(ROOT)}:{number}: {span}")
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)


def test_the_readmes_relative_links_resolve() -> None:
    readme = ROOT / "README.md"
    broken = []
    for target in MD_LINK.findall(readme.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        if not (readme.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"README.md links to missing files: {broken}"


def _checkout_files() -> Iterator[str]:
    """The repository's files as a fresh clone has them, plus new files not yet committed."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("git ls-files failed: the docs commands run in a copy of a git checkout")
    for name in listed.decode().split("\0"):
        if name and (ROOT / name).is_file():
            yield name


def _copy_repository(dest: Path) -> None:
    """A copy of the checkout at `dest`, with a `.venv/` of its own that links to the real
    one's contents: its own install stamp keeps `make` from reinstalling the package from
    the copy into the shared virtualenv."""
    for name in _checkout_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    venv = ROOT / ".venv"
    if not (venv / "bin" / "pulse").exists():
        pytest.fail("no .venv/bin/pulse: run `make venv` first")
    (dest / ".venv").mkdir()
    for entry in venv.iterdir():
        if entry.name != ".installed":
            (dest / ".venv" / entry.name).symlink_to(entry)
    (dest / ".venv" / ".installed").touch()


def _environment() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PULSE_") and k not in DROPPED_ENV
    }
    env["MPLBACKEND"] = "Agg"
    env["NO_MKDOCS_2_WARNING"] = "1"
    return env


@dataclass(frozen=True)
class Ran:
    block: Block
    returncode: int | None  # None: timed out
    output: str
    seconds: float


def _run_block(block: Block, cwd: Path, env: dict[str, str]) -> Ran:
    """Run one block with bash; on timeout, kill its whole process group."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            # A process that left the block's group (a new session) still holds the pipe:
            # waiting for its end of file would wait for that process.
            assert proc.stdout is not None
            proc.stdout.close()
            proc.wait()
            output = "(output lost: a process outside the block's group held it open)"
        code = None
    return Ran(block, code, output, time.monotonic() - started)


def _run_page(page: Path, workdir: Path, env: dict[str, str]) -> list[Ran]:
    """The page's blocks in order, in a copy of its own; stops at the first failure."""
    _copy_repository(workdir)
    results = []
    for block in RUNNABLE[page]:
        ran = _run_block(block, workdir, env)
        results.append(ran)
        if ran.returncode != 0:
            break
    return results


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, list[Ran]]:
    env = _environment()
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {
            page: pool.submit(_run_page, page, tmp_path_factory.mktemp(page.stem), env)
            for page in RUN_PAGES
        }
        return {page: future.result() for page, future in futures.items()}


def _failure(ran: Ran) -> str | None:
    """What went wrong with a block's run; None when it exited 0."""
    if ran.returncode is None:
        return f"timed out after {BLOCK_TIMEOUT} s"
    if ran.returncode != 0:
        return f"exited {ran.returncode}"
    return None


def _report(ran: Ran, status: str, fix: str) -> str:
    return (
        f"the ```sh block at {ran.block.where} {status}. {fix}\n"
        f"--- block ---\n{ran.block.code}\n--- output (last 4000 chars) ---\n"
        f"{ran.output[-4000:]}"
    )


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_commands_of_the_page_run_as_written(
    page: Path, page_runs: dict[Path, list[Ran]]
) -> None:
    for ran in page_runs[page]:
        status = _failure(ran)
        if status is not None:
            pytest.fail(
                _report(
                    ran,
                    status,
                    "Fix the command, or mark it with `<!-- not run in tests: why -->` if it "
                    "cannot run in a test.",
                )
            )
    assert len(page_runs[page]) == len(RUNNABLE[page])


# Seconds `pulse run` may take to stop after SIGINT (it gives the worker and the API 20).
STOP_SECONDS = 40


@dataclass(frozen=True)
class StackRun:
    """The runs of the blocks that need the stack, and how that stack stopped."""

    runs: list[Ran]
    returncode: int | None  # `pulse run`'s exit status after SIGINT
    output: str  # everything `pulse run` printed: banner, feed, the stop
    left_running: list[int]  # its processes still running after it exited (then killed)


def _stop_run(proc: subprocess.Popen[str]) -> None:
    """SIGINT, as Ctrl-C; a second one if it hangs (pulse run then SIGKILLs its children),
    and SIGKILL for `pulse run` itself as the last resort."""
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGKILL):
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def stack_run(tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    """One `pulse run` in a copy of the repository, started as a reader would (the copy's
    `.venv/bin/pulse`, from the copy's root, where `pulse env` and `pulse send` look for its
    state); the marked blocks run against it in document order up to the first failure; then
    SIGINT. 20 demo users instead of 200: the blocks need a stack, not a big one."""
    workdir = tmp_path_factory.mktemp("stack")
    _copy_repository(workdir)
    env = _environment()
    argv = [str(workdir / ".venv" / "bin" / "pulse"), "run", "--users", "20"]
    proc, lines = start_run(workdir, argv, env)
    assert proc.stdout is not None
    stdout = proc.stdout
    # The feed goes on while the blocks run: read it, so that a full pipe never stalls the run.
    reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
    reader.start()
    runs: list[Ran] = []
    processes: list[tuple[int, int]] = []
    try:
        processes = started_by(proc)
        for block in STACK_BLOCKS:
            ran = _run_block(block, workdir, env)
            runs.append(ran)
            if ran.returncode != 0:
                break
    finally:
        _stop_run(proc)
        reader.join(timeout=10)
        left = running(processes)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return StackRun(runs, proc.returncode, "".join(lines), left)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_the_commands_that_need_the_stack_run_against_it(stack_run: StackRun) -> None:
    for ran in stack_run.runs:
        status = _failure(ran)
        if status is None and "curl" in ran.block.code and not _is_json(ran.output):
            status = "printed no JSON document"
        if status is not None:
            pytest.fail(
                _report(
                    ran,
                    status,
                    "Fix the command; it runs against `pulse run` in the repository's root, "
                    "after the blocks marked so before it.",
                )
            )
    assert len(stack_run.runs) == len(STACK_BLOCKS)


def test_the_stack_the_commands_ran_against_stops_on_ctrl_c(stack_run: StackRun) -> None:
    tail = stack_run.output[-3000:]
    assert stack_run.returncode == 0, tail
    assert "pulse: stopped." in stack_run.output and "Traceback" not in stack_run.output, tail
    assert not stack_run.left_running, f"still running after pulse run exited: {stack_run}"
