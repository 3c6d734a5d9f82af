from meddx.cli import main

main()
