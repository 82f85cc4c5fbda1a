from leadml.cli import main

main()
