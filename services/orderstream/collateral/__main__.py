"""python -m orderstream.collateral worker"""

from orderstream.collateral.app import build

if __name__ == "__main__":
    build().main()
