"""python -m orderstream.gateway"""

from orderstream.gateway.app import main

if __name__ == "__main__":
    main()
