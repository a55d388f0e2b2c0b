"""The bare counterpart for bench_web.py: a page GET and a one-row SQLite insert, nothing else."""

import os
import sqlite3

from flask import Flask, request

app = Flask(__name__)
DB = os.environ["BARE_DB"]


@app.get("/bare")
def bare():
    return "<!doctype html><title>bare</title><p>hello</p>"


@app.post("/insert")
def insert():
    con = sqlite3.connect(DB, timeout=15)
    with con:
        con.execute("INSERT INTO t (v) VALUES (?)", (request.form.get("v", ""),))
    con.close()
    return "", 303, {"Location": "/bare"}
