"""Starting, watching and stopping processes described by ``ProcessSpec`` (``spec``),
whatever they are; nothing here knows the stack's process table."""
