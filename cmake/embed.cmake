# embed.cmake — turns a file into a C source holding its bytes, at build time:
#   cmake -DIN=file -DOUT=file.c -DNAME=symbol [-DJSON=1] -P embed.cmake
# defines `const unsigned char NAME[]` (the bytes, NUL-terminated for convenience) and
# `const size_t NAME_len` (without the NUL). With JSON=1 the input must parse as JSON (CMake's
# own parser), so a broken document fails the build instead of being served. Needs nothing but
# CMake (no xxd).
cmake_minimum_required(VERSION 3.25)
foreach(var IN ITEMS IN OUT NAME)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed.cmake: -D${var}= is missing")
  endif()
endforeach()

if(JSON)
  file(READ "${IN}" text)
  string(JSON ignored ERROR_VARIABLE json_error TYPE "${text}")
  if(json_error)
    message(FATAL_ERROR "embed.cmake: ${IN} is not valid JSON: ${json_error}")
  endif()
endif()

file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
# 0xNN, per byte; a line break every 16 bytes keeps the generated file readable in a debugger.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 sixteen) # CMake's regular expressions have no {n}
string(REGEX REPLACE "(${sixteen})" "\\1\n  " bytes "${bytes}")
get_filename_component(base "${IN}" NAME)
file(WRITE "${OUT}.tmp"
     "/* Generated at build time from ${base} by cmake/embed.cmake: do not edit. */\n"
     "#include <stddef.h>\n\n"
     "extern const unsigned char ${NAME}[];\n"
     "extern const size_t ${NAME}_len;\n"
     "const unsigned char ${NAME}[] = {\n  ${bytes}0x00};\n"
     "const size_t ${NAME}_len = ${len};\n")
# Replaced only when the content changed, so an unchanged document recompiles nothing.
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
