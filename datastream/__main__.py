from datastream.cli import main

raise SystemExit(main())
