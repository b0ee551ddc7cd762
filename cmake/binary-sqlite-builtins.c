/*
 * Linked into the static sagalane binary only, never into libsagalane.a or libsagalane.so
 * (their hosts link SQLite themselves, with whatever it has).
 *
 * Debian's libsqlite3.a is built with FTS3/4, FTS5, R-Tree (with Geopoly), dbstat and the
 * sqlite_stmt table, and is one object per SQLite source file. sqlite3_open registers each
 * of them through its list of built-in extensions (sqlite3BuiltinExtensions in main.c), so
 * main.o references these entry points and the linker takes fts5.o, fts3*.o, rtree.o,
 * dbstat.o and stmt.o with them: some 330 KB of the binary, none of which it runs. Defining
 * the entry points here, as extensions that register nothing, keeps those objects out.
 *
 * What the binary loses: the virtual table modules fts3, fts4, fts5, rtree, rtree_i32,
 * geopoly, dbstat and sqlite_stmt, and the SQL functions fts3_tokenizer, fts5 and
 * rtreenode/rtreecheck, in the databases it opens. Its own SQL (Sources/Log) uses none of
 * them; a table of one of these kinds that someone else put in a log could not be read by
 * the binary, and nothing the binary does reads other tables. The JSON functions that the
 * log's SQL does use (json_each, json_object) are in json.o and stay: their entry point,
 * sqlite3JsonTableFunctions, is not defined here.
 *
 * Each has the signature of an entry in that list, int (*)(sqlite3 *), and returns
 * SQLITE_OK so that sqlite3_open goes on as if it had registered it.
 */
#include <sqlite3.h>

/* Internal SQLite functions: no header declares them. */
int sqlite3Fts3Init(sqlite3 *db);
int sqlite3Fts5Init(sqlite3 *db);
int sqlite3RtreeInit(sqlite3 *db);
int sqlite3DbstatRegister(sqlite3 *db);
int sqlite3StmtVtabInit(sqlite3 *db);

int sqlite3Fts3Init(sqlite3 *db) { (void)db; return SQLITE_OK; }
int sqlite3Fts5Init(sqlite3 *db) { (void)db; return SQLITE_OK; }
int sqlite3RtreeInit(sqlite3 *db) { (void)db; return SQLITE_OK; }
int sqlite3DbstatRegister(sqlite3 *db) { (void)db; return SQLITE_OK; }
int sqlite3StmtVtabInit(sqlite3 *db) { (void)db; return SQLITE_OK; }
