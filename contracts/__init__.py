"""The JSON contract of BatchJobWorkflow: inputs, results and names shared by every layer."""
