"""python -m orderstream.collector worker"""

from orderstream.collector.app import build

if __name__ == "__main__":
    build().main()
