from ivrstream.cli import main

main()
