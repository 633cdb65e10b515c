from intermodal.cli import main

main()
