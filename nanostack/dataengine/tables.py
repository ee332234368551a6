"""Tables: Parquet files written and read through DuckDB embedded in the process, as dicts of numpy
columns, and read-only SQL over them.

DuckDB ingests numpy arrays directly (no pandas or pyarrow), writes Parquet, and runs the user's
`--where` and `engine sql` queries. A user's SQL runs on a fresh in-memory connection that holds
copies of the tables, after the connection is barred from the file system, and only if it is one
SELECT statement: it can read, never write.
"""
import os
from pathlib import Path

import numpy as np

from nanostack.errors import UserError

INSTALL_HINT = "install the data engine's extra: pip install 'nanostack[engine]' (or: pip install duckdb)"


def duckdb():
    """The duckdb module, or a UserError saying what to install."""
    try:
        import duckdb as module  # noqa: PLC0415
    except ImportError:
        raise UserError("the data engine needs DuckDB, which is not installed", INSTALL_HINT) from None
    return module


def connect():
    con = duckdb().connect()
    con.execute("SET threads TO 2")  # the machines this runs on are small and shared
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")  # parallel writes; readers order by `row`
    return con


def write_parquet(path, columns: dict, categorical=()) -> None:
    """Write columns (name -> 1-d numpy array, all one length) as a zstd Parquet file, atomically. Columns
    named in categorical (strings with few distinct values: split, source) go to DuckDB as small integer
    codes and come out as strings again, which skips converting millions of Python strings."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    frame, select = {}, []
    for name, values in columns.items():
        if name in categorical:
            index = {}
            codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int32, count=len(values))
            frame[name] = codes
            labels = ", ".join("'" + str(label).replace("'", "''") + "'" for label in index)
            select.append(f'([{labels}]::VARCHAR[])["{name}" + 1] AS "{name}"' if index else f'"{name}"::VARCHAR AS "{name}"')
        else:
            frame[name] = _plain(values)
            select.append(f'"{name}"')
    con = connect()
    try:
        con.register("frame", frame)
        con.execute(f"COPY (SELECT {', '.join(select)} FROM frame) TO '{_quote(tmp)}' (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.close()
    os.replace(tmp, path)


def read_parquet(paths, columns=None, where=None, order=None) -> dict:
    """The columns of one Parquet file (or of a list of files, concatenated) as numpy arrays."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        return {}
    sql = f"SELECT {', '.join(columns) if columns else '*'} FROM read_parquet({_file_list(paths)})"
    if where:
        sql += f" WHERE {where}"
    if order:
        sql += f" ORDER BY {order}"
    con = connect()
    try:
        return {k: _unmask(v) for k, v in con.execute(sql).fetchnumpy().items()}
    except duckdb().Error as e:
        raise UserError(f"table {paths[0]} cannot be read ({str(e).splitlines()[0]})",
                        "run `nanostack data verify`") from None
    finally:
        con.close()


def query(sql: str, tables: dict, what: str = "query", params=None) -> dict:
    """Run one read-only SELECT over `tables` (name -> dict of numpy columns, or a list of Parquet files)
    and return its columns. Anything but a single SELECT, and any file access, is refused."""
    db = duckdb()
    try:
        statements = db.extract_statements(sql)
    except db.Error as e:
        raise UserError(f"{what} is not valid SQL ({_first_line(e)})", "fix the SQL") from None
    if len(statements) != 1 or statements[0].type != db.StatementType.SELECT:
        raise UserError(f"{what} must be one read-only SELECT; it holds {len(statements)} statement(s) "
                        f"({', '.join(s.type.name for s in statements)})", "remove anything that writes")
    con = connect()
    try:
        for name, table in tables.items():
            if isinstance(table, dict):
                con.register(f"{name}_frame", {k: _plain(v) for k, v in table.items()})
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
                con.unregister(f"{name}_frame")
            else:
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet({_file_list(table)})")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            result = con.execute(sql, params or []).fetchnumpy()
        except db.Error as e:
            hint = "the tables are: " + "; ".join(f"{n}({', '.join(_names(con, n))})" for n in tables)
            raise UserError(f"{what} failed ({_first_line(e)})", hint) from None
        return {k: _unmask(v) for k, v in result.items()}
    finally:
        con.close()


def where_rows(where: str, tables: dict, table: str = "examples") -> np.ndarray:
    """The `row` values of `table` where the SQL condition holds (a --where option)."""
    sql = f"SELECT row FROM {table} WHERE ({where})"
    return query(sql, tables, what=f"--where {where!r}")["row"].astype(np.int64)


def _names(con, table):
    return [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]


def _first_line(error) -> str:
    return str(error).strip().splitlines()[0]


def _plain(array):
    array = np.asarray(array)
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return array.astype(np.int32)
    return array


def _unmask(array):
    if isinstance(array, np.ma.MaskedArray):
        if array.dtype.kind == "f":
            return array.filled(np.nan)
        if array.dtype == object:
            return array.filled(None)
        return array.data
    return array


def _quote(path) -> str:
    return str(path).replace("'", "''")


def _file_list(paths) -> str:
    paths = [paths] if isinstance(paths, (str, Path)) else paths
    return "[" + ", ".join(f"'{_quote(p)}'" for p in paths) + "]"
