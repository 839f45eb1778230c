from crmcli.cli.app import main

main()
