from revflow.cli import main

main()
