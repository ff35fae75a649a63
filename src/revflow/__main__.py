from revflow.cli import app

app()
