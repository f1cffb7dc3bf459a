pub fn translate_function() {}
