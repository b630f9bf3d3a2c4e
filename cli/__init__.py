"""The one `orbitmq` command: a subcommand per process and tool."""
