"""``python -m myfy_db``: the myfy-db command line, as the console script runs it."""

from myfy_db.cli.process import run_console_script

if __name__ == "__main__":
    run_console_script()
