from tritonforge.cli.main import main

main()
