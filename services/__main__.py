"""`python -m services`: run the state API (settings from PULSE_* environment variables)."""

from services.app import serve

if __name__ == "__main__":
    serve()
