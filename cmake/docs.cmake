# The man page (cutune.1) and the bash completion script (cutune.bash), written at build time by
# the cutune just built (`cutune docs man|bash-completion`) from the flags the commands know:
# train's from the settings table, the others' from their --help. Nothing is fetched; the files
# follow every change to a flag. `cmake --install` puts them where man and bash-completion look:
# share/man/man1/cutune.1 and share/bash-completion/completions/cutune.
set(CUTUNE_MAN_PAGE ${CMAKE_CURRENT_BINARY_DIR}/cutune.1)
set(CUTUNE_BASH_COMPLETION ${CMAKE_CURRENT_BINARY_DIR}/cutune.bash)
add_custom_command(OUTPUT ${CUTUNE_MAN_PAGE}
                   COMMAND cutune_cli docs man --out ${CUTUNE_MAN_PAGE}
                   DEPENDS cutune_cli
                   COMMENT "Writing the man page cutune.1" VERBATIM)
add_custom_command(OUTPUT ${CUTUNE_BASH_COMPLETION}
                   COMMAND cutune_cli docs bash-completion --out ${CUTUNE_BASH_COMPLETION}
                   DEPENDS cutune_cli
                   COMMENT "Writing the bash completion cutune.bash" VERBATIM)
add_custom_target(cutune_docs ALL DEPENDS ${CUTUNE_MAN_PAGE} ${CUTUNE_BASH_COMPLETION})

install(FILES ${CUTUNE_MAN_PAGE} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CUTUNE_BASH_COMPLETION}
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME cutune)
