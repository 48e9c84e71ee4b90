"""The one pipeline every protocol feeds: a list of named steps between adapters and the sink."""

from tally.pipeline.context import RequestContext
from tally.pipeline.runner import Pipeline, PipelineResult, Rejection
from tally.pipeline.steps import DEFAULT_STEPS

__all__ = ["DEFAULT_STEPS", "Pipeline", "PipelineResult", "Rejection", "RequestContext"]
