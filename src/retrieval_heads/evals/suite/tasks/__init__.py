"""The suite's built-in task families, one module each; their `register_task` decorators register them when
`registry` imports this folder."""
