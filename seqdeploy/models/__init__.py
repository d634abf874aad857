"""The model zoo: config-built recurrent models (torch). Import :mod:`seqdeploy.models.build`."""
