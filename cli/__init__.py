"""The starter's commands: one module per concern, starter.py is the entry point.

app parses arguments and dispatches; jobs and schedules hold the commands;
job_input turns job options into a workflow input; progress and follow show a
running job; durations reads --every and prints spans; environment reads the
starter's settings; input_check runs the job's own input checks for validate,
estimate and schedule create; hints spells the commands messages quote;
interrupts makes Ctrl-C stop within a second; local_stack reads what `make up`
says about itself.
"""
