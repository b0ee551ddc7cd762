#ifndef SAGALANE_CSQLITE_SHIM_H
#define SAGALANE_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a cast of -1 to a function pointer, which Swift cannot import. */
static inline void (*sl_sqlite_transient(void))(void *) { return SQLITE_TRANSIENT; }

/* sqlite3_db_config is variadic; Swift cannot call it directly. */
static inline int sl_sqlite_db_config_int(sqlite3 *db, int op, int value, int *out) {
    return sqlite3_db_config(db, op, value, out);
}
/* sqlite3_config is variadic too. Memory statistics cost a global mutex on every allocation
 * and free; they can only be switched before SQLite initializes (SQLITE_MISUSE after). */
static inline int sl_sqlite_config_memstatus(int on) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, on);
}
/* Syncs a file of `db`'s main database through its VFS, as a checkpoint would: the database
 * file (SQLITE_FCNTL_FILE_POINTER) or its write-ahead log (SQLITE_FCNTL_JOURNAL_POINTER). A
 * file the connection has not opened has nothing to sync. */
static inline int sl_sqlite_sync_file(sqlite3 *db, int pointer_op) {
    sqlite3_file *file = 0;
    int rc = sqlite3_file_control(db, "main", pointer_op, &file);
    if (rc != SQLITE_OK) return rc;
    if (file == 0 || file->pMethods == 0) return SQLITE_OK;
    return file->pMethods->xSync(file, SQLITE_SYNC_NORMAL);
}
#endif
