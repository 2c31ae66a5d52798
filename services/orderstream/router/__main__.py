"""python -m orderstream.router worker"""

from orderstream.router.app import build

if __name__ == "__main__":
    build().main()
