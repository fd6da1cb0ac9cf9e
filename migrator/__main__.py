from migrator.fast import main

main()
