"""Label Studio: annotators correct the model's pre-labels in a real server, detal pulls the corrections.

One idea per module:
- `format`: pure conversions (labelling config XML, coordinates, regions, annotator effort);
- `client`: the only module that talks HTTP (connect, project, push, pull; the project-title and
  document-root rules);
- `server`: install, serve and stop a local server (own venv, token, port);
- `annotator`: the simulated annotator `simulate` uses (a bot answers with the ground truth).
label_studio_sdk is imported inside the client's functions, so importing this package stays cheap.
"""
