from ivrstream.cli import main

if __name__ == "__main__":  # not when a spawned process (the audit log's) imports it
    main()
