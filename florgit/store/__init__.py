"""florgit's data model on top of git: runs, their logs, notes and spools."""
