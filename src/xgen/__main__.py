from xgen.cli import main

main()
