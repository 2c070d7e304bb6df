from xgen.runtime.cli import main

main()
