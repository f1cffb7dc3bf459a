/* A SQLite workload for WASI hosts: create a database file, fill it, query it, check it.
 *
 *     sqlite-driver DBFILE
 *
 * DBFILE is created (or its tables replaced) by the program. Everything printed on stdout is
 * deterministic, so the same driver built natively and for wasm32-wasi prints the same text
 * (expected.txt). Exit status: 0 on success, 1 on any SQLite error (message on stderr), 2 on
 * bad usage.
 *
 * What it exercises on a WASI host: path_open with create/truncate in a preopened directory,
 * pread/pwrite-style file I/O at offsets (fd_seek + fd_read/fd_write), fd_sync, file stats,
 * the rollback journal being created and unlinked next to the database, the "unix-dotfile"
 * lock (a directory created and removed next to the database), clocks, and random_get.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite3.h"

#define ROWS 10000
#define CITIES 10

static sqlite3 *db;

static void die(const char *what) {
    fprintf(stderr, "sqlite-driver: %s: %s\n", what, db ? sqlite3_errmsg(db) : "no database");
    exit(1);
}

static void exec(const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite-driver: %s: %s\n", sql, err ? err : "?");
        exit(1);
    }
}

static sqlite3_stmt *prepare(const char *sql) {
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) die(sql);
    return stmt;
}

/* Runs a query and prints each row as `label: col1 | col2 | ...`. */
static void query(const char *label, const char *sql) {
    sqlite3_stmt *stmt = prepare(sql);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        printf("%s:", label);
        int n = sqlite3_column_count(stmt);
        for (int i = 0; i < n; i++) {
            const unsigned char *text = sqlite3_column_text(stmt, i);
            printf("%s %s", i == 0 ? "" : " |", text ? (const char *)text : "NULL");
        }
        printf("\n");
    }
    if (rc != SQLITE_DONE) die(sql);
    sqlite3_finalize(stmt);
}

/* A fixed pseudo-random sequence (xorshift32), the same on every platform. */
static uint32_t rng_state = 2463534242u;
static uint32_t next_random(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static const char *const city_names[CITIES] = {
    "Aberdeen", "Bergen", "Cork", "Dundee", "Esbjerg",
    "Faro", "Gdansk", "Hamburg", "Inverness", "Jurmala",
};

static void open_database(const char *path) {
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        die("open");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: sqlite-driver DBFILE\n");
        return 2;
    }
    const char *path = argv[1];
    printf("sqlite %s\n", sqlite3_libversion());

    open_database(path);
    query("journal_mode", "PRAGMA journal_mode");
    exec("DROP TABLE IF EXISTS reading; DROP TABLE IF EXISTS city;"
         "CREATE TABLE city(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
         "CREATE TABLE reading("
         "  id INTEGER PRIMARY KEY,"
         "  city_id INTEGER NOT NULL REFERENCES city(id),"
         "  day INTEGER NOT NULL,"
         "  temp INTEGER NOT NULL,"
         "  note TEXT NOT NULL);"
         "CREATE INDEX reading_by_city ON reading(city_id, day);");

    /* All inserts in one transaction: one journal, one sync at COMMIT. */
    exec("BEGIN");
    sqlite3_stmt *city = prepare("INSERT INTO city(id, name) VALUES (?1, ?2)");
    for (int i = 0; i < CITIES; i++) {
        sqlite3_bind_int(city, 1, i + 1);
        sqlite3_bind_text(city, 2, city_names[i], -1, SQLITE_STATIC);
        if (sqlite3_step(city) != SQLITE_DONE) die("insert city");
        sqlite3_reset(city);
    }
    sqlite3_finalize(city);
    sqlite3_stmt *ins =
        prepare("INSERT INTO reading(id, city_id, day, temp, note) VALUES (?1, ?2, ?3, ?4, ?5)");
    for (int i = 1; i <= ROWS; i++) {
        uint32_t r = next_random();
        char note[48];
        snprintf(note, sizeof note, "r%05d-%08x", i, (unsigned)next_random());
        sqlite3_bind_int(ins, 1, i);
        sqlite3_bind_int(ins, 2, (int)(r % CITIES) + 1);
        sqlite3_bind_int(ins, 3, (int)((r >> 8) % 365) + 1);
        sqlite3_bind_int(ins, 4, (int)((r >> 20) % 61) - 20);
        sqlite3_bind_text(ins, 5, note, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(ins) != SQLITE_DONE) die("insert reading");
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    exec("COMMIT");
    printf("inserted %d rows in one transaction\n", ROWS);

    query("count", "SELECT count(*) FROM reading");
    query("sum/min/max", "SELECT sum(temp), min(temp), max(temp) FROM reading");
    query("by_city",
          "SELECT c.name, count(*), sum(r.temp), printf('%.3f', avg(r.temp))"
          " FROM reading r JOIN city c ON c.id = r.city_id"
          " GROUP BY c.id ORDER BY c.id");
    query("hottest",
          "SELECT r.id, c.name, r.day, r.temp, r.note"
          " FROM reading r JOIN city c ON c.id = r.city_id"
          " ORDER BY r.temp DESC, r.id ASC LIMIT 5");
    query("above_average",
          "SELECT count(*) FROM reading WHERE temp > (SELECT avg(temp) FROM reading)");
    query("warmest_city_of_month",
          "SELECT m, name, t FROM ("
          "  SELECT (r.day - 1) / 31 AS m, c.name AS name, printf('%.3f', avg(r.temp)) AS t,"
          "         rank() OVER (PARTITION BY (r.day - 1) / 31 ORDER BY avg(r.temp) DESC, c.id) AS k"
          "  FROM reading r JOIN city c ON c.id = r.city_id GROUP BY m, c.id)"
          " WHERE k = 1 ORDER BY m LIMIT 4");
    query("checksum", "SELECT sum(id * (temp + 21) % 1000003), sum(length(note)) FROM reading");

    /* A second transaction that rewrites and deletes rows through the index. */
    exec("BEGIN; UPDATE reading SET temp = temp + 1 WHERE city_id = 3;"
         "DELETE FROM reading WHERE day % 7 = 0; COMMIT");
    query("after_update", "SELECT count(*), sum(temp) FROM reading");
    query("integrity_check", "PRAGMA integrity_check");
    if (sqlite3_close(db) != SQLITE_OK) die("close");
    db = NULL;

    /* Reopen: the rows must come back from the file, not from this connection's cache. */
    open_database(path);
    query("reopened", "SELECT count(*), sum(temp), max(id) FROM reading");
    query("reopened_integrity_check", "PRAGMA integrity_check");
    if (sqlite3_close(db) != SQLITE_OK) die("close");
    printf("ok\n");
    return 0;
}
