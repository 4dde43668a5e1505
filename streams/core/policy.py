"""The lifecycle policy: windows, thresholds, tiers. One validated file, sensible defaults.

The policy is plain data handed to the core; the core never reads files. `load_policy` is the
only place that touches the file system. Files are TOML (or JSON) with the field names below.
"""

from __future__ import annotations

import json
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.core.eventtime import DAY_MS, HOUR_MS

PositiveDays = Annotated[float, Field(gt=0)]


class Tier(BaseModel):
    """A value tier: users whose rolling 90-day spend reaches `min_spend` qualify."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, max_length=32)
    min_spend: float = Field(ge=0)


class EmpiricalCurve(BaseModel):
    """P(no activity within the horizon) after s whole days of silence, for users with at least
    `min_active_days` active days (the strata of `ChurnModel.empirical`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    min_active_days: int = Field(ge=1)
    # Index s = days of silence; non-decreasing; the last value holds for longer silences.
    p_churn: tuple[float, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _monotone(self) -> EmpiricalCurve:
        values = self.p_churn
        if any(not 0 <= v <= 1 for v in values):
            raise ValueError("p_churn values must be probabilities in [0, 1]")
        if any(b < a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError("p_churn must not decrease as silence grows")
        return self


class RfmBounds(BaseModel):
    """RFM score boundaries learnt from a history by `pulse fit` (the 20th, 40th, 60th and
    80th percentiles of the users' recency, frequency and monetary value)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    recency_days: tuple[float, float, float, float]
    frequency: tuple[float, float, float, float]
    monetary: tuple[float, float, float, float]


class ChurnModel(BaseModel):
    """The fitted churn model, from `pulse fit`: what scores risk and decides warnings.

    BG/NBD parameters (time unit: weeks) fitted on users' active days; `empirical` is the
    population's chance of no return within the horizon after s days of silence, by how many
    active days a user has, used where BG/NBD is absent (the history had too few repeat users
    to fit it). A churn warning fires once per silence, at the first moment the probability of
    no activity within `horizon_days` reaches `warn_probability`, not before
    `min_silence_days` of silence and not after `max_silence_days` (when set); failing that,
    at the late look (when set): at `late_silence_days` of silence if the probability has
    reached `late_warn_probability` by then.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    r: float | None = Field(default=None, gt=0)
    alpha: float | None = Field(default=None, gt=0)
    a: float | None = Field(default=None, gt=0)
    b: float | None = Field(default=None, gt=0)
    empirical: tuple[EmpiricalCurve, ...] = ()
    horizon_days: PositiveDays = 60
    warn_probability: float = Field(default=0.7, gt=0, lt=1)
    min_silence_days: float = Field(default=7, ge=0)
    # The last silence at which the warning may still fire (None: until the horizon). Equal to
    # `min_silence_days`, the warning is decided at that one moment: on CDNOW a probability
    # that crosses the level only later in a silence warned less reliably, and the level chosen
    # before the cut kept its recall after it (docs/churn-model.md).
    max_silence_days: float | None = Field(default=None, ge=0)
    # The late look: a user of a silence not warned in the window above is looked at once more,
    # at the end of the day on which `late_silence_days` are complete, and warned if the
    # probability has reached `late_warn_probability` (usually lower than `warn_probability`:
    # a longer silence says more). `pulse fit` adds one when it judges it more precise inside
    # the calibration (docs/churn-model.md). Both or neither; after the window, within the
    # horizon.
    late_silence_days: float | None = Field(default=None, gt=0)
    late_warn_probability: float | None = Field(default=None, gt=0, lt=1)
    # Stage thresholds fitted with the model (`pulse fit` proposes them); they apply where the
    # policy file does not set its own (see load_policy).
    dormant_after_days: float | None = Field(default=None, gt=0)
    churned_after_days: float | None = Field(default=None, gt=0)
    # RFM score boundaries learnt with the model; they apply where the policy file's [rfm]
    # does not set its own.
    rfm: RfmBounds | None = None

    @model_validator(mode="after")
    def _usable(self) -> ChurnModel:
        given = [v is not None for v in (self.r, self.alpha, self.a, self.b)]
        if any(given) and not all(given):
            raise ValueError("BG/NBD needs all four of r, alpha, a and b")
        if not all(given) and not self.empirical:
            raise ValueError("a churn model needs BG/NBD parameters (r, alpha, a, b) or empirical")
        levels = [c.min_active_days for c in self.empirical]
        if levels and (levels[0] != 1 or levels != sorted(set(levels))):
            raise ValueError(
                "empirical curves must start at min_active_days 1, in increasing order"
            )
        if self.max_silence_days is not None and self.max_silence_days < self.min_silence_days:
            raise ValueError("max_silence_days must not be below min_silence_days")
        late, late_level = self.late_silence_days, self.late_warn_probability
        if (late is None) != (late_level is None):
            raise ValueError("a late look needs both late_silence_days and late_warn_probability")
        if late is not None:
            if self.max_silence_days is None or late <= self.max_silence_days:
                raise ValueError(
                    "late_silence_days must come after the warning window: set max_silence_days "
                    "below it"
                )
            if late + 1 > self.horizon_days:
                # The look is at the end of a day: up to a day after `late` days of silence.
                raise ValueError("late_silence_days must be at least a day within horizon_days")
        return self

    @property
    def has_bgnbd(self) -> bool:
        return self.r is not None


Bounds = tuple[float, float, float, float]

# The eight classic RFM segments by recency, frequency and monetary value each high (h) or low
# (l), in that order; the field's Chinese names are in docs/rfm.md.
DEFAULT_SEGMENTS = {
    "hhh": "important_value",
    "hlh": "important_development",
    "lhh": "important_retention",
    "llh": "important_win_back",
    "hhl": "general_value",
    "hll": "general_development",
    "lhl": "general_retention",
    "lll": "general_win_back",
}


class RfmPolicy(BaseModel):
    """RFM value segments (core/rfm.py): scores 1-5 against four increasing boundaries each
    (`pulse fit` proposes quintiles of a history), and a name per high/low combination."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    window_days: int = Field(default=365, ge=1, le=3660)
    # Days since the last purchase: score 5 at or below the first boundary, 1 above the last.
    recency_days: Bounds = (14, 30, 90, 180)
    # Purchases and spend in the window: score 1 at or below the first boundary, 5 above the last.
    frequency: Bounds = (1, 2, 3, 5)
    monetary: Bounds = (20, 50, 100, 250)
    # A score at or above this is "high".
    high_score: int = Field(default=3, ge=2, le=5)
    segments: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SEGMENTS))

    @model_validator(mode="after")
    def _consistent(self) -> RfmPolicy:
        for name in ("recency_days", "frequency", "monetary"):
            bounds = getattr(self, name)
            # Non-decreasing: quintiles of a history with ties repeat a value (a score is
            # then skipped).
            if list(bounds) != sorted(bounds) or bounds[0] < 0:
                raise ValueError(f"rfm.{name} must be four non-decreasing numbers >= 0")
        if set(self.segments) != set(DEFAULT_SEGMENTS):
            raise ValueError(
                "rfm.segments must name each of hhh, hhl, hlh, hll, lhh, lhl, llh, lll "
                "(recency, frequency, monetary: high or low)"
            )
        names = list(self.segments.values())
        if len(set(names)) != 8 or any(not n or len(n) > 64 or "|" in n for n in names):
            raise ValueError("rfm.segments names must be 8 distinct, 1-64 characters, no '|'")
        return self


class Policy(BaseModel):
    """Every decision threshold Pulse uses. Durations are in days unless the name says hours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Rolling windows (days) reported for every user; the largest bounds the state kept.
    windows_days: tuple[int, ...] = (1, 7, 30, 90)
    # Event types counted separately; any other type is counted as "other".
    event_types: tuple[str, ...] = (
        "signup",
        "session_start",
        "page_view",
        "purchase",
        "points_earned",
        "custom",
    )
    # Types that the user did not do themselves: they do not count as activity.
    passive_types: tuple[str, ...] = ("points_earned",)
    # Types whose `amount` is money spent (other amounts, e.g. points, are not spend).
    spend_types: tuple[str, ...] = ("purchase",)

    # Event-time input limits.
    allowed_lateness_hours: float = Field(default=48, ge=0)
    max_future_skew_seconds: float = Field(default=300, ge=0)
    min_valid_ts_ms: int = 946_684_800_000  # 2000-01-01T00:00:00Z
    dedup_capacity: int = Field(default=64, ge=1, le=4096)

    # Lifecycle stages.
    new_user_days: PositiveDays = 7
    at_risk_gap_multiplier: float = Field(default=3.0, gt=0)
    at_risk_floor_days: PositiveDays = 3
    at_risk_ceiling_days: PositiveDays = 14
    at_risk_default_days: PositiveDays = 7
    min_gaps_for_typical: int = Field(default=2, ge=1)
    drop_ratio: float = Field(default=0.3, gt=0, lt=1)
    drop_recover_ratio: float = Field(default=0.6, gt=0, le=1)
    drop_min_active_days_30d: int = Field(default=8, ge=1, le=30)
    dormant_after_days: PositiveDays = 30
    churned_after_days: PositiveDays = 60
    reactivated_days: PositiveDays = 14

    # Tiers by rolling 90-day spend; upgrade at once, downgrade after the grace period.
    tiers: tuple[Tier, ...] = (
        Tier(name="bronze", min_spend=0),
        Tier(name="silver", min_spend=100),
        Tier(name="gold", min_spend=500),
        Tier(name="platinum", min_spend=2000),
    )
    # The fitted churn model (`pulse fit`; PULSE_CHURN_MODEL_FILE or inline here): with it the
    # risk score is the probability of no activity within its horizon, and it decides the
    # warnings; without it the silence rule above does.
    churn_model: ChurnModel | None = None

    tier_window_days: int = Field(default=90, ge=1)
    downgrade_grace_days: float = Field(default=14, ge=0)

    # Recall measurement (core/holdout.py, core/recall.py): this share of users is the
    # holdout group, whose churn warnings senders skip; the salt decides who (changing it
    # reshuffles the groups). A warned user who is back within the attribution window counts
    # as reactivated.
    holdout_fraction: float = Field(default=0.1, ge=0, lt=1)
    holdout_salt: str = Field(default="pulse-recall", min_length=1, max_length=128)
    attribution_window_days: PositiveDays = 14

    # Retention cohorts (core/retention.py): how many days and ISO weeks after a cohort's own
    # the retention triangle reports (the state keeps 30 days and 26 weeks whatever these say).
    retention_days: int = Field(default=30, ge=1, le=30)
    retention_weeks: int = Field(default=26, ge=1, le=26)
    # RFM value segments (core/rfm.py; `[rfm]` in a policy file).
    rfm: RfmPolicy = RfmPolicy()

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if not self.windows_days or any(w < 1 for w in self.windows_days):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        if list(self.windows_days) != sorted(set(self.windows_days)):
            raise ValueError("windows_days must be strictly increasing")
        if 7 not in self.windows_days or 30 not in self.windows_days:
            raise ValueError(
                "windows_days must include 7 and 30 (the activity-drop rule uses them)"
            )
        if self.tier_window_days > self.horizon_days:
            raise ValueError("tier_window_days must not exceed the largest window")
        if not self.tiers or self.tiers[0].min_spend != 0:
            raise ValueError("the first tier must have min_spend 0 (every user has a tier)")
        spends = [t.min_spend for t in self.tiers]
        if spends != sorted(set(spends)):
            raise ValueError("tiers must be ordered by strictly increasing min_spend")
        if len({t.name for t in self.tiers}) != len(self.tiers):
            raise ValueError("tier names must be unique")
        if not self.at_risk_floor_days <= self.at_risk_ceiling_days:
            raise ValueError("at_risk_floor_days must not exceed at_risk_ceiling_days")
        if not self.at_risk_ceiling_days < self.dormant_after_days < self.churned_after_days:
            raise ValueError("need at_risk_ceiling_days < dormant_after_days < churned_after_days")
        if self.drop_recover_ratio < self.drop_ratio:
            raise ValueError("drop_recover_ratio must be at least drop_ratio (hysteresis)")
        return self

    # Derived values in milliseconds, used by the core.
    @property
    def horizon_days(self) -> int:
        return max(self.windows_days)

    @property
    def lateness_ms(self) -> int:
        return int(self.allowed_lateness_hours * HOUR_MS)

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)


def days_ms(days: float) -> int:
    """Days as integer milliseconds."""
    return int(days * DAY_MS)


@dataclass(frozen=True, slots=True)
class Derived:
    """Figures the core derives from a policy, computed once per policy rather than per event.

    Each is exactly the expression the rules would otherwise evaluate (e.g. `new_user_ms` is
    `days_ms(policy.new_user_days)`), so reading it here changes no result.
    """

    horizon_days: int
    lateness_ms: int
    n_types: int  # the policy's event types plus the trailing "other"
    type_index: dict[str, int]  # first position of each type in `event_types`
    passive_types: frozenset[str]
    spend_types: frozenset[str]
    spend_indexes: tuple[int, ...]  # positions of `spend_types` in the bucket counts
    new_user_ms: int
    dormant_ms: int
    churned_ms: int
    reactivated_ms: int
    grace_ms: int
    attribution_ms: int
    default_threshold_ms: int
    tier_names: tuple[str, ...]
    tier_cents: tuple[int, ...]  # each tier's min_spend in cents, as eligibility compares it
    tier_rank: dict[str, int]
    tier_min_spend: dict[str, float]
    # A fingerprint of the RFM policy: a state's remembered RFM scores and their next change
    # (`UserState.rfm_until`) hold only under the policy that assessed them.
    rfm_tag: int


def _type_index(etype: str, types: tuple[str, ...]) -> int:
    """Where `etype` is counted: its position in `types`, or the trailing "other" slot."""
    return types.index(etype) if etype in types else len(types)


def _derive(policy: Policy) -> Derived:
    types = policy.event_types
    # As `tuple.index` finds them: a name given twice is at its first position.
    index: dict[str, int] = {}
    for i, name in enumerate(types):
        index.setdefault(name, i)
    rank: dict[str, int] = {}
    min_spend: dict[str, float] = {}
    for i, tier in enumerate(policy.tiers):
        rank.setdefault(tier.name, i)
        min_spend.setdefault(tier.name, tier.min_spend)
    return Derived(
        horizon_days=policy.horizon_days,
        lateness_ms=policy.lateness_ms,
        n_types=len(types) + 1,
        type_index=index,
        passive_types=frozenset(policy.passive_types),
        spend_types=frozenset(policy.spend_types),
        spend_indexes=tuple(_type_index(t, types) for t in policy.spend_types),
        new_user_ms=days_ms(policy.new_user_days),
        dormant_ms=days_ms(policy.dormant_after_days),
        churned_ms=days_ms(policy.churned_after_days),
        reactivated_ms=days_ms(policy.reactivated_days),
        grace_ms=days_ms(policy.downgrade_grace_days),
        attribution_ms=days_ms(policy.attribution_window_days),
        default_threshold_ms=days_ms(policy.at_risk_default_days),
        tier_names=policy.tier_names,
        tier_cents=tuple(round(t.min_spend * 100) for t in policy.tiers),
        tier_rank=rank,
        tier_min_spend=min_spend,
        rfm_tag=zlib.crc32(policy.rfm.model_dump_json().encode()) or 1,
    )


# The last policy derived, with its figures. A policy is frozen, so the figures stay valid for
# as long as it is the same object; keeping it referenced here means its id cannot be reused.
# Not a cached_property: `model_copy(update=...)` copies the instance dict, cached values and
# all, so a copy with another field would keep the figures of the original.
_last: tuple[Policy, Derived] | None = None


def derived(policy: Policy) -> Derived:
    """The derived figures of `policy` (computed on first use of each policy object)."""
    global _last
    last = _last
    if last is not None and last[0] is policy:
        return last[1]
    figures = _derive(policy)
    _last = (policy, figures)
    return figures


class PolicyError(ValueError):
    """The policy file is missing, unreadable or invalid; the message says which field."""


def load_churn_model(path: str | Path) -> ChurnModel:
    """Read a `pulse fit` parameters file (JSON with r, alpha, a, b)."""
    p = Path(path)
    try:
        return ChurnModel.model_validate_json(p.read_bytes())
    except OSError as exc:
        raise PolicyError(f"cannot read churn model file {p}: {exc.strerror}") from exc
    except ValueError as exc:
        raise PolicyError(f"churn model file {p} is invalid: {exc}") from exc


def load_policy(path: str | Path | None, churn_model: str | Path | None = None) -> Policy:
    """The policy file (None: defaults), with a fitted churn model file if one is given.

    The model's stage thresholds (`dormant_after_days`, `churned_after_days`, fitted with it)
    and RFM boundaries replace the defaults, not values the policy file sets itself. Raises
    PolicyError.
    """
    policy = _load_policy_file(path)
    if not churn_model:
        return policy
    model = load_churn_model(churn_model)
    update: dict[str, object] = {"churn_model": model}
    for name in ("dormant_after_days", "churned_after_days"):
        value = getattr(model, name)
        if value is not None and name not in policy.model_fields_set:
            update[name] = value
    if model.rfm is not None:
        own = policy.rfm.model_fields_set if "rfm" in policy.model_fields_set else set()
        fitted = {k: v for k, v in model.rfm.model_dump().items() if k not in own}
        if fitted:
            update["rfm"] = {**policy.rfm.model_dump(exclude_unset=True), **fitted}
    try:
        return Policy.model_validate({**policy.model_dump(exclude_unset=True), **update})
    except ValueError as exc:
        raise PolicyError(f"the policy with churn model {churn_model} is invalid: {exc}") from exc


def _load_policy_file(path: str | Path | None) -> Policy:
    """Read and validate a policy file (TOML or JSON); None gives the defaults."""
    if path is None or str(path) == "":
        return Policy()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {p} is not valid {p.suffix or 'TOML'}: {exc}") from exc
    try:
        return Policy.model_validate(data)
    except ValueError as exc:
        raise PolicyError(f"policy file {p} is invalid: {exc}") from exc
