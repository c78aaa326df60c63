# Injected into llama.cpp's configure step (CMAKE_PROJECT_INCLUDE) by tools/install.sh, so the build compiles
# what trio-voice runs, llama-server, and not the dozen benchmarking and conversion tools that live beside it
# in tools/ (llama.cpp has options for its tests and examples, not for those). The server's own dependencies
# (cli, ui, mtmd, common) are kept.
get_property(_trio_voice_wrapped GLOBAL PROPERTY TRIO_VOICE_SERVER_ONLY)
if(NOT _trio_voice_wrapped)
    set_property(GLOBAL PROPERTY TRIO_VOICE_SERVER_ONLY ON)
    set(TRIO_VOICE_SKIPPED_TOOLS
        batched-bench gguf-split imatrix llama-bench completion perplexity quantize tokenize tts
        cvector-generator export-lora fit-params results rpc tuning)
    function(add_subdirectory source_dir)
        get_filename_component(_parent "${CMAKE_CURRENT_SOURCE_DIR}" NAME)
        if(_parent STREQUAL "tools" AND source_dir IN_LIST TRIO_VOICE_SKIPPED_TOOLS)
            message(STATUS "trio-voice: not building llama.cpp tools/${source_dir}")
            return()
        endif()
        _add_subdirectory(${ARGV})
    endfunction()
endif()
