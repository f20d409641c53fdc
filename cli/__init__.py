"""The starter's commands: one module per concern, starter.py is the entry point.

app parses arguments and dispatches; jobs and schedules hold the commands;
job_input turns job options into a workflow input; progress and follow show a
running job; durations reads --every; environment reads the starter's settings.
"""
