"""Kubeflow's training operator (`kubeflow.org/v1`): PyTorchJob, TFJob, XGBoostJob, JAXJob,
PaddleJob, MPIJob.

`crds` declares the CustomResourceDefinitions,
`common` is the job controller every framework shares (pods, headless Services, PodGroups,
restart policies, run policy, status), and one module per framework says what differs:
its defaults, the environment its processes need to find each other, and when it has
succeeded. `validation` holds the rules of the real operator's validating webhooks, which
`webhook` serves to the API server (and the controller applies to jobs stored without it).
"""
