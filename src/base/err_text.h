/* err_text.h — the text of an errno value, worded the same on every platform. */
#ifndef SLUICE_BASE_ERR_TEXT_H
#define SLUICE_BASE_ERR_TEXT_H

/* Returns a static text for err, an errno value, positive or negated (the modules' return
 * codes). The socket errors read as glibc words them on every platform, since the Windows C
 * library has no text for them ("Unknown error"); any other value gets strerror's text. Not
 * thread-safe where strerror is not. */
const char *err_text(int err);

#endif
