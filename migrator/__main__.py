from migrator.cli import app

app(prog_name="migrator")
