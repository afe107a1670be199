"""Pipeline steps: one pure entry function per DAG stage, called by the CLI and Kubeflow."""
