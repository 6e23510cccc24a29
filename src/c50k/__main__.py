from c50k.cli import main

main()
