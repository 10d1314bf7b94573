# Installs the section 3 pages of docs/man3 and, for every other name in a
# page's NAME section, a one-line page that points to it (".so"), so that
# `man 3 mpconn_conn_send` finds mpconn_conn(3).
file(GLOB MPCONN_MAN3_PAGES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/man3/*.3)
set(MPCONN_MAN3_LINKDIR ${CMAKE_BINARY_DIR}/man3-links)
file(MAKE_DIRECTORY ${MPCONN_MAN3_LINKDIR})
set(MPCONN_MAN3_LINKS "")
foreach(page ${MPCONN_MAN3_PAGES})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${page})
  get_filename_component(page_name ${page} NAME_WE)
  file(READ ${page} text)
  # NAME holds "name, name, ... \- summary", over one or more lines.
  if(NOT text MATCHES "\n\\.SH NAME\n([^\n]*(\n[^.\n][^\n]*)*)")
    message(FATAL_ERROR "${page}: no NAME section")
  endif()
  string(REGEX REPLACE "\\\\-.*" "" names "${CMAKE_MATCH_1}")
  string(REGEX REPLACE "[ \n]+" "" names "${names}")
  string(REPLACE "," ";" names "${names}")
  foreach(name ${names})
    if(NOT name STREQUAL page_name)
      # Written only when changed: a reconfigure while the tests install stays harmless.
      file(CONFIGURE OUTPUT ${MPCONN_MAN3_LINKDIR}/${name}.3
        CONTENT ".so man3/${page_name}.3\n" @ONLY)
      list(APPEND MPCONN_MAN3_LINKS ${MPCONN_MAN3_LINKDIR}/${name}.3)
    endif()
  endforeach()
endforeach()
# Names a page no longer lists lose their pointer.
file(GLOB MPCONN_MAN3_OLD ${MPCONN_MAN3_LINKDIR}/*.3)
foreach(old ${MPCONN_MAN3_OLD})
  if(NOT old IN_LIST MPCONN_MAN3_LINKS)
    file(REMOVE ${old})
  endif()
endforeach()
install(FILES ${MPCONN_MAN3_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man3)
install(DIRECTORY ${MPCONN_MAN3_LINKDIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man3)
