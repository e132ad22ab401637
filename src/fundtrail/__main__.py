from fundtrail.cli.main import main

main()
