"""The Python SDK: send events to a Tally server, and read them back.

```python
from tally.client import Tally

tally = Tally("http://127.0.0.1:8000", app_key="...")
tally.track("item purchase", user="customer-42", sum=120.5, properties={"item": "rolex"})
```

``Tally`` sends from a background thread; ``AsyncTally`` from an asyncio task. Both batch,
retry with backoff (honouring ``Retry-After``), give every event an id so that a retry is stored
once, and keep a bounded queue that drops the newest events when full. See docs/python-sdk.md.
"""

from tally.client._core import (
    CLOSE_TIMEOUT,
    NETWORK_ERROR,
    Failure,
    TallyError,
    backoff_delay,
    parse_retry_after,
)
from tally.client.aio import AsyncTally
from tally.client.sync import Tally

__all__ = [
    "CLOSE_TIMEOUT",
    "NETWORK_ERROR",
    "AsyncTally",
    "Failure",
    "Tally",
    "TallyError",
    "backoff_delay",
    "parse_retry_after",
]
