"""The web dashboard: a single page served at ``/`` (docs/dashboard.md).

The page is plain ES modules and CSS in ``static/`` (no build step); its charts use plotly.js as
the ``plotly`` Python package ships it. Everything it shows comes from the JSON API under
``/api/v1/``, called with the dashboard session cookie and CSRF token.
"""
