"""python -m orderstream.execution worker"""

from orderstream.execution.app import build

if __name__ == "__main__":
    build().main()
