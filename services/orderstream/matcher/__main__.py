"""python -m orderstream.matcher worker"""

from orderstream.matcher.app import build

if __name__ == "__main__":
    build().main()
