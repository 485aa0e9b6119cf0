from recbatch.cli import app

app()
