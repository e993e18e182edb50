"""Command-line entry points (`llava-hf SUBCOMMAND`)."""
