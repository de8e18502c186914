"""``reclab view``: the Textual viewer. The only package of reclab that imports Textual.

Import it lazily (the CLI does so inside the ``view`` command) so the other
commands never pay for Textual. :class:`reclab.tui.app.ReclabApp` is the app;
:class:`reclab.tui.source.RecordingSource` is the adapter over the model that
every screen and pane reads from.
"""
