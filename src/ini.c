/*
 * INI files: inih does the lexing; this file adds configparser's semantics
 * (DEFAULT inheritance, continuation lines, duplicate detection, lower-cased
 * keys, environment expansion) and error messages that name file and line.
 *
 * Debian's libinih is built with 200-byte lines. Rather than truncate longer
 * lines silently, the reader below hands inih a long line as a first chunk
 * plus "soft" continuation chunks, which the handler glues back together
 * without the "\n" a real continuation line gets.
 */
#include "baseplate/ini.h"
#include "internal.h"

#include <ini.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *key;
  char *value;
  int line;
} bp_ini_entry_t;

struct bp_section_s {
  char *name;
  int line;
  bp_ini_entry_t *entries;
  int count, cap;
  int own; /* entries [0, own) are the section's own, the rest from DEFAULT */
};

struct bp_ini_s {
  char *path;
  bp_section_t **sections; /* [0] is DEFAULT */
  int count, cap;
};

/* The reader's view of the text, shared with the handler. */
typedef struct {
  bp_ini_t *ini;
  const char *text, *pos, *end;
  int line;           /* physical line of the chunk handed out last */
  int line_indented;  /* that physical line began with white space */
  int soft;           /* the chunk handed out last is a soft continuation */
  const char *pending; /* rest of a long line still to hand out */
  const char *pending_end;
  bp_section_t *cur;  /* section of the last handler call */
  char last_key[256];
  int last_line;
  int *linemap;       /* physical line of each chunk, for inih's error line */
  int calls, mapcap;
  char *err;
  size_t errlen;
  int failed;
} bp_ini_parse_t;

#define CHUNK 190 /* < inih's 200-byte buffer, with room for the newline */

static void fail(bp_ini_parse_t *p, int line, const char *fmt, const char *a, const char *b) {
  char reason[512];
  if (p->failed) return;
  p->failed = 1;
  snprintf(reason, sizeof reason, fmt, a ? a : "", b ? b : "");
  if (line > 0)
    snprintf(p->err, p->errlen, "%s:%d: %s", p->ini->path, line, reason);
  else
    snprintf(p->err, p->errlen, "%s: %s", p->ini->path, reason);
}

static bp_section_t *section_new(bp_ini_t *ini, const char *name, int line) {
  bp_section_t *s;
  if (ini->count == ini->cap) {
    int cap = ini->cap ? ini->cap * 2 : 8;
    bp_section_t **n = realloc(ini->sections, cap * sizeof *n);
    if (!n) return NULL;
    ini->sections = n;
    ini->cap = cap;
  }
  s = calloc(1, sizeof *s);
  if (!s || !(s->name = strdup(name))) {
    free(s);
    return NULL;
  }
  s->line = line;
  ini->sections[ini->count++] = s;
  return s;
}

static bp_section_t *section_find(const bp_ini_t *ini, const char *name) {
  for (int i = 0; i < ini->count; i++)
    if (strcmp(ini->sections[i]->name, name) == 0) return ini->sections[i];
  return NULL;
}

static bp_ini_entry_t *entry_find(const bp_section_t *s, const char *key) {
  for (int i = 0; i < s->count; i++)
    if (strcmp(s->entries[i].key, key) == 0) return &s->entries[i];
  return NULL;
}

static int entry_add(bp_section_t *s, const char *key, const char *value, int line) {
  bp_ini_entry_t *e;
  if (s->count == s->cap) {
    int cap = s->cap ? s->cap * 2 : 8;
    bp_ini_entry_t *n = realloc(s->entries, cap * sizeof *n);
    if (!n) return BP_ENOMEM;
    s->entries = n;
    s->cap = cap;
  }
  e = &s->entries[s->count];
  e->key = strdup(key);
  e->value = strdup(value);
  e->line = line;
  if (!e->key || !e->value) {
    free(e->key);
    free(e->value);
    return BP_ENOMEM;
  }
  s->count++;
  return BP_OK;
}

static int append_value(bp_ini_entry_t *e, const char *sep, const char *more) {
  size_t a = strlen(e->value), b = strlen(sep), c = strlen(more);
  char *n = realloc(e->value, a + b + c + 1);
  if (!n) return BP_ENOMEM;
  memcpy(n + a, sep, b);
  memcpy(n + a + b, more, c + 1);
  e->value = n;
  return BP_OK;
}

/* Where to cut a long line: a point at most CHUNK bytes in, such that neither
 * side of the cut is white space (inih strips it) and the rest does not start
 * with a comment character. Returns NULL when there is no such point. */
static const char *cut_point(const char *s, const char *end) {
  const char *c = s + CHUNK;
  if (c >= end) return end;
  for (; c > s + 1; c--)
    if (!isspace((unsigned char)c[-1]) && !isspace((unsigned char)*c) && *c != ';' && *c != '#')
      return c;
  return NULL;
}

/* inih's fgets-like reader. */
static char *reader_chunk(char *str, int num, void *stream) {
  bp_ini_parse_t *p = stream;
  const char *s, *e, *nl, *cut;
  size_t n;

  if (p->failed) return NULL;
  if (p->pending) {
    s = p->pending;
    e = p->pending_end;
    p->soft = 1;
    str[0] = ' '; /* leading white space makes it a continuation for inih */
    cut = cut_point(s, e);
    if (!cut) {
      fail(p, p->line, "line cannot be split for parsing; shorten it", NULL, NULL);
      return NULL;
    }
    n = cut - s;
    memcpy(str + 1, s, n);
    str[n + 1] = '\n';
    str[n + 2] = '\0';
    p->pending = cut < e ? cut : NULL;
    return str;
  }
  if (p->pos >= p->end) return NULL;
  s = p->pos;
  nl = memchr(s, '\n', p->end - s);
  e = nl ? nl : p->end;
  p->pos = nl ? nl + 1 : p->end;
  p->line++;
  p->soft = 0;
  p->line_indented = (s < e && (*s == ' ' || *s == '\t'));
  if (e > s && e[-1] == '\r') e--;
  if ((size_t)(e - s) > BP_INI_MAX_LINE) {
    fail(p, p->line, "line longer than %s bytes", "65535", NULL);
    return NULL;
  }
  if (memchr(s, '\0', e - s)) {
    fail(p, p->line, "NUL byte in line", NULL, NULL);
    return NULL;
  }
  if (e - s > num - 2) {
    /* Long line: the first chunk must hold the whole "key =" part. */
    const char *eq = s;
    while (eq < e && *eq != '=' && *eq != ':') eq++;
    if (eq == e || eq - s > CHUNK - 10 || *s == '[' || p->line_indented) {
      fail(p, p->line, "line too long to parse (a key or section name over %s bytes?)", "180", NULL);
      return NULL;
    }
    cut = cut_point(s, e);
    if (!cut || cut <= eq + 1) {
      const char *c = eq + 1;
      while (c < e && isspace((unsigned char)*c)) c++;
      cut = cut_point(c, e);
      if (!cut || cut - s > num - 2) {
        fail(p, p->line, "line cannot be split for parsing; shorten it", NULL, NULL);
        return NULL;
      }
    }
    n = cut - s;
    memcpy(str, s, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    p->pending = cut;
    p->pending_end = e;
    return str;
  }
  n = e - s;
  memcpy(str, s, n);
  str[n] = '\n';
  str[n + 1] = '\0';
  return str;
}

static int section_header(bp_ini_parse_t *p, const char *s, const char *e);

static char *reader(char *str, int num, void *stream) {
  bp_ini_parse_t *p = stream;
  char *r = reader_chunk(str, num, stream);
  if (!r) return NULL;
  if (p->calls == p->mapcap) {
    int cap = p->mapcap ? p->mapcap * 2 : 64;
    int *n = realloc(p->linemap, cap * sizeof *n);
    if (!n) {
      fail(p, p->line, "out of memory", NULL, NULL);
      return NULL;
    }
    p->linemap = n;
    p->mapcap = cap;
  }
  p->linemap[p->calls++] = p->line;
  if (!p->soft && !p->line_indented && r[0] == '[' && section_header(p, r, r + strlen(r)) != BP_OK)
    return NULL;
  return r;
}

/* Sections are recorded here rather than in the handler so that a section
 * with no keys exists too, and so that a repeated header is caught. */
static int section_header(bp_ini_parse_t *p, const char *s, const char *e) {
  const char *close = memchr(s, ']', e - s);
  char name[256];
  size_t n;
  bp_section_t *sec;
  if (!close) {
    fail(p, p->line, "section header without a closing ']'", NULL, NULL);
    return BP_EINVAL;
  }
  n = close - s - 1;
  if (n >= sizeof name) {
    fail(p, p->line, "section name too long", NULL, NULL);
    return BP_EINVAL;
  }
  memcpy(name, s + 1, n);
  name[n] = '\0';
  sec = section_find(p->ini, name);
  if (sec == p->ini->sections[0] && sec->line == 0) {
    sec->line = p->line; /* the first [DEFAULT] header */
  } else if (sec) {
    char where[32];
    snprintf(where, sizeof where, "%d", sec->line);
    fail(p, p->line, "section '%s' already exists (line %s)", name, sec->line ? where : "?");
    return BP_EINVAL;
  }
  if (!sec && !(sec = section_new(p->ini, name, p->line))) {
    fail(p, p->line, "out of memory", NULL, NULL);
    return BP_ENOMEM;
  }
  p->cur = sec;
  p->last_key[0] = '\0';
  return BP_OK;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
  bp_ini_parse_t *p = user;
  bp_section_t *s;
  char key[256];
  size_t i, n = strlen(name);

  if (p->failed) return 0;
  if (*section == '\0') {
    fail(p, p->line, "key '%s' outside of any section", name, NULL);
    return 0;
  }
  if (n >= sizeof key) {
    fail(p, p->line, "key too long", NULL, NULL);
    return 0;
  }
  for (i = 0; i <= n; i++) key[i] = (char)tolower((unsigned char)name[i]);

  s = p->cur;
  if (!s || strcmp(s->name, section) != 0) return 0; /* cannot happen */

  if ((p->soft || p->line_indented) && strcmp(key, p->last_key) == 0) {
    bp_ini_entry_t *e = entry_find(s, key);
    if (e && append_value(e, p->soft ? "" : "\n", value) == BP_OK) return 1;
    return 0;
  }
  if (entry_find(s, key)) {
    char where[32];
    snprintf(where, sizeof where, "%d", entry_find(s, key)->line);
    fail(p, p->line, "key '%s' already set in this section (line %s)", key, where);
    return 0;
  }
  if (entry_add(s, key, value, p->line) != BP_OK) return 0;
  memcpy(p->last_key, key, n + 1);
  return 1;
}

/* os.path.expandvars: $name and ${name} from the environment; unknown names
 * are left as written. Returns a malloc'd string or NULL on ENOMEM. */
static char *expand_env(const char *v) {
  size_t cap = strlen(v) + 1, len = 0;
  char *out = malloc(cap);
  if (!out) return NULL;
  while (*v) {
    const char *name = NULL, *after = NULL;
    size_t nlen = 0;
    if (v[0] == '$' && v[1] == '{') {
      const char *close = strchr(v + 2, '}');
      if (close) {
        name = v + 2;
        nlen = close - name;
        after = close + 1;
      }
    } else if (v[0] == '$' && (isalnum((unsigned char)v[1]) || v[1] == '_')) {
      name = v + 1;
      while (isalnum((unsigned char)name[nlen]) || name[nlen] == '_') nlen++;
      after = name + nlen;
    }
    const char *rep = NULL;
    if (name && nlen > 0 && nlen < 256) {
      char buf[256];
      memcpy(buf, name, nlen);
      buf[nlen] = '\0';
      rep = getenv(buf);
    }
    size_t rlen = rep ? strlen(rep) : 1;
    if (len + rlen + 1 > cap) {
      while (len + rlen + 1 > cap) cap *= 2;
      char *n = realloc(out, cap);
      if (!n) {
        free(out);
        return NULL;
      }
      out = n;
    }
    if (rep) {
      memcpy(out + len, rep, rlen);
      len += rlen;
      v = after;
    } else {
      out[len++] = *v++;
    }
  }
  out[len] = '\0';
  return out;
}

static int finish(bp_ini_t *ini) {
  bp_section_t *def = ini->sections[0];
  for (int i = 0; i < ini->count; i++) {
    bp_section_t *s = ini->sections[i];
    for (int j = 0; j < s->count; j++) {
      char *x = expand_env(s->entries[j].value);
      if (!x) return BP_ENOMEM;
      free(s->entries[j].value);
      s->entries[j].value = x;
    }
  }
  for (int i = 1; i < ini->count; i++) {
    bp_section_t *s = ini->sections[i];
    s->own = s->count;
    for (int j = 0; j < def->count; j++)
      if (!entry_find(s, def->entries[j].key) &&
          entry_add(s, def->entries[j].key, def->entries[j].value, def->entries[j].line) != BP_OK)
        return BP_ENOMEM;
  }
  def->own = def->count;
  return BP_OK;
}

int bp_ini_parse(const char *text, size_t len, const char *name, bp_ini_t **out, char *err,
                 size_t errlen) {
  bp_ini_parse_t p;
  bp_ini_t *ini;
  int rc;

  *out = NULL;
  if (errlen) err[0] = '\0';
  ini = calloc(1, sizeof *ini);
  if (!ini || !(ini->path = strdup(name ? name : "<string>"))) {
    free(ini);
    return BP_ENOMEM;
  }
  /* A UTF-8 byte order mark, as some Windows editors write: not content */
  if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
    text += 3;
    len -= 3;
  }
  memset(&p, 0, sizeof p);
  p.ini = ini;
  p.text = p.pos = text;
  p.end = text + len;
  p.err = err;
  p.errlen = errlen;
  if (!section_new(ini, "DEFAULT", 0)) {
    bp_ini_free(ini);
    return BP_ENOMEM;
  }
  rc = ini_parse_stream(reader, &p, handler, &p);
  if (!p.failed && rc == -2) { /* inih's own code: its allocation failed */
    free(p.linemap);
    bp_ini_free(ini);
    return BP_ENOMEM;
  }
  if (!p.failed && rc > 0)
    fail(&p, rc <= p.calls ? p.linemap[rc - 1] : p.line, "syntax error (expected '[section]', 'key = value' or a comment)", NULL, NULL);
  free(p.linemap);
  if (p.failed) {
    bp_ini_free(ini);
    return BP_EINVAL;
  }
  if (finish(ini) != BP_OK) {
    bp_ini_free(ini);
    return BP_ENOMEM;
  }
  *out = ini;
  return BP_OK;
}

int bp_ini_load(const char *path, bp_ini_t **out, char *err, size_t errlen) {
  char *text;
  size_t len;
  int rc;

  *out = NULL;
  rc = bp__read_file(path, &text, &len, 16 << 20);
  if (rc != BP_OK) {
    snprintf(err, errlen, "%s: cannot read config file: %s", path,
             rc == BP_ETOOBIG ? "larger than 16 MiB" : strerror(-rc));
    return BP_ENOENT;
  }
  rc = bp_ini_parse(text, len, path, out, err, errlen);
  free(text);
  return rc;
}

void bp_ini_free(bp_ini_t *ini) {
  if (!ini) return;
  for (int i = 0; i < ini->count; i++) bp_section_free(ini->sections[i]);
  free(ini->sections);
  free(ini->path);
  free(ini);
}

const char *bp_ini_path(const bp_ini_t *ini) { return ini->path; }

/* --- sections built in memory ------------------------------------------------------ */

bp_section_t *bp_section_new(const char *name) {
  bp_section_t *s = calloc(1, sizeof *s);
  if (!s || !(s->name = strdup(name ? name : ""))) {
    free(s);
    return NULL;
  }
  return s;
}

int bp_section_set(bp_section_t *s, const char *key, const char *value) {
  bp_ini_entry_t *e;
  char *v;
  int rc;
  if (!key || !value) return BP_EINVAL;
  if ((e = entry_find(s, key))) {
    if (!(v = strdup(value))) return BP_ENOMEM;
    free(e->value);
    e->value = v;
    return BP_OK;
  }
  if ((rc = entry_add(s, key, value, 0)) != BP_OK) return rc;
  s->own = s->count;
  return BP_OK;
}

void bp_section_free(bp_section_t *s) {
  if (!s) return;
  for (int j = 0; j < s->count; j++) {
    free(s->entries[j].key);
    free(s->entries[j].value);
  }
  free(s->entries);
  free(s->name);
  free(s);
}

int bp_ini_section_count(const bp_ini_t *ini) { return ini->count - 1; }

const bp_section_t *bp_ini_section_at(const bp_ini_t *ini, int i) {
  return (i >= 0 && i < ini->count - 1) ? ini->sections[i + 1] : NULL;
}

const bp_section_t *bp_ini_section(const bp_ini_t *ini, const char *name) {
  const bp_section_t *s = section_find(ini, name);
  return s == ini->sections[0] ? NULL : s;
}

const char *bp_section_name(const bp_section_t *s) { return s->name; }

const char *bp_section_get(const bp_section_t *s, const char *key) {
  const bp_ini_entry_t *e = entry_find(s, key);
  return e ? e->value : NULL;
}

int bp_section_count(const bp_section_t *s) { return s->count; }

int bp_section_own_count(const bp_section_t *s) { return s->own; }

int bp_section_item(const bp_section_t *s, int i, const char **key, const char **value) {
  if (i < 0 || i >= s->count) return BP_ENOENT;
  *key = s->entries[i].key;
  *value = s->entries[i].value;
  return BP_OK;
}

int bp_section_line(const bp_section_t *s, const char *key) {
  const bp_ini_entry_t *e = entry_find(s, key);
  return e ? e->line : 0;
}
