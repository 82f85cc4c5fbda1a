"""leadml's MLflow pyfunc as code (MLflow's "models from code"), not as a pickle.

:func:`leadml.tracking.log_training_run` logs this file as the model's code. MLflow copies it into
the logged model and runs it when the model is logged and loaded (``mlflow.pyfunc.load_model``,
``spark_udf``): it imports the installed leadml and hands MLflow a
:class:`leadml.tracking.LeadMLPyfunc`, whose state is the bundle artifact (plain files). Nothing is
unpickled, so loading works with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.
"""

from leadml.tracking import _set_pyfunc_model

_set_pyfunc_model()
