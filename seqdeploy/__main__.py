"""``python -m seqdeploy``."""

from seqdeploy.cli import main

if __name__ == "__main__":
    main()
