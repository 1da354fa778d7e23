"""``python -m myfy_db``: the myfy-db command line."""

from myfy_db.cli import main

if __name__ == "__main__":
    main()
